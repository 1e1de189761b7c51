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
-- once, from the latest load. Only rows of loads that have committed (int_load_batches) are taken.
-- Incremental: a run reads only the rows of the load batches above the highest batch already in the table (none,
-- on most days: genome files come with a new catalogue release); a new row replaces the table's row of its pair
-- only if it comes later in latest_per_key's order, so an incremental run keeps the same rows as a full refresh.
with

batches as (

    select * from {{ ref('int_load_batches') }}
    {% if is_incremental() %}
    where batch > {{ watermark() }}
    {% endif %}

),

scores as (

    select
        stg_genome_scores.*,
        batches.batch

    from {{ ref('stg_genome_scores') }} as stg_genome_scores
    inner join batches on stg_genome_scores.load_id = batches.load_id
    -- implied by the join; lets the scan of RAW skip the micro-partitions of older loads
    where stg_genome_scores.loaded_at >= (select min(first_loaded_at) from batches)
    {{ latest_per_key(['movie_id', 'tag_id']) }}

),

{% if is_incremental() %}
-- rows that replace the table's row of their pair, or have none there
later as (

    select scores.*
    from scores
    left join {{ this }} as current_rows
        on scores.movie_id = current_rows.movie_id
        and scores.tag_id = current_rows.tag_id
    where current_rows.movie_id is null or {{ is_later('scores', 'current_rows') }}

),
{% else %}
later as (

    select * from scores

),
{% endif %}

final as (

    select
        movie_id,
        tag_id,
        relevance,
        loaded_at,
        load_id,
        source_file,
        source_row_number,
        batch

    from later

)

select * from final
