-- Grain: one row per genre that at least one movie has.
with

bridge as (

    select * from {{ ref('bridge_movie_genres') }}

),

final as (

    select
        genre,
        count(*) as movie_count

    from bridge
    group by genre

)

select * from final
