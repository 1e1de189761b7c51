-- depends_on: {{ ref('movies_snapshot') }}
-- depends_on: {{ ref('int_load_batches') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['genre', 'rating_year'],
        tmp_relation_type='transient',
        on_schema_change='fail',
        post_hook="delete from {{ this }} where rating_count = 0"
    )
}}
-- Grain: one row per (genre, calendar year of the rating). A rating counts once for every genre of its movie;
-- movies with "(no genres listed)" are not counted.
-- Incremental: a run recomputes only the (genre, year) pairs that can have changed since the highest
-- ratings_batch in the table: those of the fct_ratings rows of a load batch above it, and, for a movie that gained
-- or lost a genre in a catalogue version of a load batch above it (movies_snapshot), that genre in every year the
-- movie was rated. Batches, not load times: a load can commit after a later-stamped one was transformed. A pair
-- left without ratings is written with a count of 0 and removed by the post-hook.
with

{% if is_incremental() %}
watermark as (

    select {{ watermark('ratings_batch') }} as batch

),

versions as (

    select
        movie_id,
        coalesce(genres, '') as genres,
        coalesce(lag(genres) over (partition by movie_id order by dbt_valid_from), '') as previous_genres,
        load_id

    from {{ ref('movies_snapshot') }}

),

-- versions that came with a load batched since (a snapshot row keeps the load of the row that opened it)
changed as (

    select versions.*
    from versions
    inner join {{ ref('int_load_batches') }} as batches on versions.load_id = batches.load_id
    where batches.batch > (select batch from watermark)

),

new_memberships as (

    select changed.movie_id, genre.value::varchar as genre
    from changed, lateral flatten(input => split(changed.genres, '|')) as genre

),

old_memberships as (

    select changed.movie_id, genre.value::varchar as genre
    from changed, lateral flatten(input => split(changed.previous_genres, '|')) as genre

),

changed_memberships as (

    (select * from new_memberships except select * from old_memberships)
    union
    (select * from old_memberships except select * from new_memberships)

),

affected as (

    select distinct movie_genres.genre, year(fct_ratings.rated_at) as rating_year
    from {{ ref('fct_ratings') }} as fct_ratings
    inner join {{ ref('bridge_movie_genres') }} as movie_genres on fct_ratings.movie_id = movie_genres.movie_id
    where fct_ratings.batch > (select batch from watermark)

    union

    select distinct changed_memberships.genre, year(fct_ratings.rated_at) as rating_year
    from {{ ref('fct_ratings') }} as fct_ratings
    inner join changed_memberships on fct_ratings.movie_id = changed_memberships.movie_id

),
{% endif %}

ratings as (

    select *, year(rated_at) as rating_year
    from {{ ref('fct_ratings') }}
    {% if is_incremental() %}
    where year(rated_at) in (select rating_year from affected)
    {% endif %}

),

movie_genres as (

    select * from {{ ref('bridge_movie_genres') }}

),

counted as (

    select
        movie_genres.genre::varchar as genre,
        ratings.rating_year::number(38, 0) as rating_year,
        count(*)::number(38, 0) as rating_count,
        count(distinct ratings.user_id)::number(38, 0) as user_count,
        count(distinct ratings.movie_id)::number(38, 0) as movie_count,
        avg(ratings.rating::float)::float as mean_rating,
        max(ratings.loaded_at)::timestamp_ntz as ratings_loaded_at,
        max(ratings.batch)::number(38, 0) as ratings_batch

    from ratings
    inner join movie_genres on ratings.movie_id = movie_genres.movie_id
    {% if is_incremental() %}
    where exists (
        select 1 from affected
        where affected.genre = movie_genres.genre and affected.rating_year = ratings.rating_year
    )
    {% endif %}
    group by 1, 2

),

final as (

    {% if is_incremental() %}
    select
        affected.genre::varchar as genre,
        affected.rating_year::number(38, 0) as rating_year,
        coalesce(counted.rating_count, 0)::number(38, 0) as rating_count,
        coalesce(counted.user_count, 0)::number(38, 0) as user_count,
        coalesce(counted.movie_count, 0)::number(38, 0) as movie_count,
        counted.mean_rating::float as mean_rating,
        counted.ratings_loaded_at::timestamp_ntz as ratings_loaded_at,
        counted.ratings_batch::number(38, 0) as ratings_batch

    from affected
    left join counted
        on affected.genre = counted.genre and affected.rating_year = counted.rating_year
    {% else %}
    select * from counted
    {% endif %}

)

select * from final
