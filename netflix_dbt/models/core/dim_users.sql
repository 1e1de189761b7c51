-- Grain: one row per user who rated at least one movie.
with

ratings as (

    select * from {{ ref('fct_ratings') }}

),

final as (

    select
        user_id,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at,
        count(*) as rating_count,
        avg(rating)::float as mean_rating

    from ratings
    group by user_id

)

select * from final
