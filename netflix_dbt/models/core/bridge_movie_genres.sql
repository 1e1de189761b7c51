-- Grain: one row per (movie, genre) pair; movies with "(no genres listed)" have no rows.
with

movies as (

    select * from {{ ref('stg_movies') }}

),

exploded as (

    select distinct
        movies.movie_id,
        genre.value::varchar as genre

    from movies,
        lateral flatten(input => movies.genre_list) as genre

)

select * from exploded
