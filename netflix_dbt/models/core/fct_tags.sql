-- Grain: one row per tag event (user, movie, tag, tagged_at).
with

tags as (

    select * from {{ ref('stg_tags') }}

),

final as (

    select
        user_id,
        movie_id,
        tag,
        lower(tag) as tag_normalized,
        tagged_at,
        tagged_at::date as tagged_date

    from tags

)

select * from final
