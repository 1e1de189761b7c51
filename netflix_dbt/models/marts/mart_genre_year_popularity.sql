-- Grain: one row per (genre, calendar year of the rating). A rating counts once for every genre of its movie;
-- movies with "(no genres listed)" are not counted.
with

ratings as (

    select * from {{ ref('fct_ratings') }}

),

movie_genres as (

    select * from {{ ref('bridge_movie_genres') }}

),

final as (

    select
        movie_genres.genre::varchar as genre,
        year(ratings.rated_at)::number(38, 0) as rating_year,
        count(*)::number(38, 0) as rating_count,
        count(distinct ratings.user_id)::number(38, 0) as user_count,
        count(distinct ratings.movie_id)::number(38, 0) as movie_count,
        avg(ratings.rating::float)::float as mean_rating

    from ratings
    inner join movie_genres on ratings.movie_id = movie_genres.movie_id
    group by 1, 2

)

select * from final
