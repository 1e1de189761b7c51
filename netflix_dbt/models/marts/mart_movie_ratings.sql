-- Grain: one row per movie with at least one rating. bayesian_rating = (C * m + sum of ratings) / (C + n), with
-- m the mean of all ratings and C = var('bayesian_prior_weight') (10): a movie with few ratings is pulled towards
-- the global mean, as if it had C extra ratings at that mean; with many ratings it approaches its own mean.
-- Built from the per-movie figures of int_movie_rating_stats (one row per movie), not from every rating.
with

stats as (

    select * from {{ ref('int_movie_rating_stats') }}

),

movies as (

    select * from {{ ref('dim_movies') }}

),

global as (

    select sum(rating_sum) / sum(rating_count) as global_mean
    from stats

),

final as (

    select
        stats.movie_id::number(38, 0) as movie_id,
        movies.title::varchar as title,
        movies.release_year::number(38, 0) as release_year,
        movies.genres::varchar as genres,
        stats.rating_count::number(38, 0) as rating_count,
        (stats.rating_sum / stats.rating_count)::float as mean_rating,
        (
            ({{ var('bayesian_prior_weight') }} * global.global_mean + stats.rating_sum)
            / ({{ var('bayesian_prior_weight') }} + stats.rating_count)
        )::float as bayesian_rating,
        stats.first_rated_at::timestamp_ntz as first_rated_at,
        stats.last_rated_at::timestamp_ntz as last_rated_at

    from stats
    cross join global
    left join movies on stats.movie_id = movies.movie_id

)

select * from final
