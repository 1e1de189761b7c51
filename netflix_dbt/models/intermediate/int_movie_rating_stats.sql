{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='movie_id',
        tmp_relation_type='transient',
        on_schema_change='fail'
    )
}}
-- Grain: one row per movie with at least one rating: the additive figures of its ratings, from which
-- mart_movie_ratings is computed. Incremental: a run recomputes only the movies with fct_ratings rows of a load
-- batch above the highest ratings_batch in the table (rows fct_ratings took or replaced since), each from all of
-- its ratings.
with

ratings as (

    select * from {{ ref('fct_ratings') }}
    {% if is_incremental() %}
    where movie_id in (
        select movie_id
        from {{ ref('fct_ratings') }}
        where batch > {{ watermark('ratings_batch') }}
    )
    {% endif %}

),

final as (

    select
        movie_id,
        count(*) as rating_count,
        sum(rating::float) as rating_sum,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at,
        max(loaded_at) as ratings_loaded_at,
        max(batch) as ratings_batch

    from ratings
    group by movie_id

)

select * from final
