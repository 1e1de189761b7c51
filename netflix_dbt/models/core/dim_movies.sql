-- Grain: one row per movie in the catalogue (latest version), with its external ids.
with

movies as (

    select * from {{ ref('stg_movies') }}

),

links as (

    select * from {{ ref('stg_links') }}

),

final as (

    select
        movies.movie_id,
        movies.title,
        movies.original_title,
        movies.release_year,
        movies.release_year - mod(movies.release_year, 10) as release_decade,
        movies.genres,
        movies.has_genres,
        links.imdb_id,
        links.tmdb_id

    from movies
    left join links on movies.movie_id = links.movie_id

)

select * from final
