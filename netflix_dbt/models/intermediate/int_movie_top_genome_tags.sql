{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='movie_id',
        tmp_relation_type='transient',
        on_schema_change='fail'
    )
}}
-- Grain: one row per (movie, tag rank) for the 10 genome tags most relevant to each movie with a genome (ties broken
-- by tag id). Incremental: a run ranks again only the movies with fct_genome_scores rows of a load batch above the
-- highest scores_batch in the table.
with

scores as (

    select * from {{ ref('fct_genome_scores') }}
    {% if is_incremental() %}
    where movie_id in (
        select movie_id
        from {{ ref('fct_genome_scores') }}
        where batch > {{ watermark('scores_batch') }}
    )
    {% endif %}

),

ranked as (

    select
        movie_id,
        tag_id,
        relevance,
        row_number() over (partition by movie_id order by relevance desc, tag_id) as tag_rank,
        max(loaded_at) over (partition by movie_id) as scores_loaded_at,
        max(batch) over (partition by movie_id) as scores_batch

    from scores
    qualify tag_rank <= 10

)

select * from ranked
