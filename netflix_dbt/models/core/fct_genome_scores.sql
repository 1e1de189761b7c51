{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['movie_id', 'tag_id'],
        tmp_relation_type='transient',
        on_schema_change='fail'
    )
}}
-- Grain: one row per (movie, genome tag): how relevant the tag is to the movie. A pair loaded more than once is kept
-- once, from the latest load. Incremental: a run reads only the rows loaded after the latest loaded_at already in
-- the table (none, on most days: genome files come with a new catalogue release).
with

scores as (

    select * from {{ ref('stg_genome_scores') }}
    {% if is_incremental() %}
    where loaded_at > {{ watermark() }}
    {% endif %}
    {{ latest_per_key(['movie_id', 'tag_id']) }}

),

final as (

    select
        movie_id,
        tag_id,
        relevance,
        loaded_at

    from scores

)

select * from final
