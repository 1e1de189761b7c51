-- depends_on: {{ ref('stg_movies') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='rating_year',
        tmp_relation_type='transient',
        on_schema_change='fail'
    )
}}
-- Grain: one row per (genre, calendar year of the rating). A rating counts once for every genre of its movie;
-- movies with "(no genres listed)" are not counted. Incremental: a run recomputes whole years (delete+insert on
-- rating_year): the years of the ratings loaded after the latest ratings_loaded_at in the table, and every year
-- rated for a movie loaded again since (its genres may have changed).
with

{% if is_incremental() %}
watermark as (

    select coalesce(max(ratings_loaded_at), '1970-01-01'::timestamp_ntz) as loaded_at
    from {{ this }}

),

changed_years as (

    select distinct year(rated_at) as rating_year
    from {{ ref('fct_ratings') }}
    where loaded_at > (select loaded_at from watermark)
        or movie_id in (
            select movie_id from {{ ref('stg_movies') }}
            where loaded_at > (select loaded_at from watermark)
        )

),
{% endif %}

ratings as (

    select * from {{ ref('fct_ratings') }}
    {% if is_incremental() %}
    where year(rated_at) in (select rating_year from changed_years)
    {% endif %}

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
        avg(ratings.rating::float)::float as mean_rating,
        max(ratings.loaded_at)::timestamp_ntz as ratings_loaded_at

    from ratings
    inner join movie_genres on ratings.movie_id = movie_genres.movie_id
    group by 1, 2

)

select * from final
