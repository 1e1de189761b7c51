-- Grain: one row per movie with at least one rating. bayesian_rating = (C * m + sum of ratings) / (C + n), with
-- m the mean of all ratings and C = var('bayesian_prior_weight') (10): a movie with few ratings is pulled towards
-- the global mean, as if it had C extra ratings at that mean; with many ratings it approaches its own mean.
with

ratings as (

    select * from {{ ref('fct_ratings') }}

),

movies as (

    select * from {{ ref('dim_movies') }}

),

global as (

    select avg(rating::float) as global_mean
    from ratings

),

per_movie as (

    select
        movie_id,
        count(*) as rating_count,
        sum(rating::float) as rating_sum,
        avg(rating::float) as mean_rating,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at

    from ratings
    group by movie_id

),

final as (

    select
        per_movie.movie_id::number(38, 0) as movie_id,
        movies.title::varchar as title,
        movies.release_year::number(38, 0) as release_year,
        movies.genres::varchar as genres,
        per_movie.rating_count::number(38, 0) as rating_count,
        per_movie.mean_rating::float as mean_rating,
        (
            ({{ var('bayesian_prior_weight') }} * global.global_mean + per_movie.rating_sum)
            / ({{ var('bayesian_prior_weight') }} + per_movie.rating_count)
        )::float as bayesian_rating,
        per_movie.first_rated_at::timestamp_ntz as first_rated_at,
        per_movie.last_rated_at::timestamp_ntz as last_rated_at

    from per_movie
    cross join global
    left join movies on per_movie.movie_id = movies.movie_id

)

select * from final
