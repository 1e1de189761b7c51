{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'movie_id', 'rated_at'],
        tmp_relation_type='transient',
        on_schema_change='fail'
    )
}}
-- Grain: one row per rating event (user, movie, rated_at). An event loaded more than once is kept once: the latest
-- load wins (then the latest file, then the last row in it), so a corrected rating replaces the earlier one.
-- Only rows of loads that have committed (int_load_batches) are taken.
-- Incremental: a run reads only the rating rows of the load batches above the highest batch already in the table
-- (not of the rows stamped after the newest LOADED_AT: a load can commit after a later-stamped one was
-- transformed). A new row replaces the table's row of its event only if it comes later in latest_per_key's order
-- (a late load's rows can be older), so an incremental run keeps the same rows as a full refresh.
with

batches as (

    select * from {{ ref('int_load_batches') }}
    {% if is_incremental() %}
    where batch > {{ watermark() }}
    {% endif %}

),

ratings as (

    select
        stg_ratings.*,
        batches.batch

    from {{ ref('stg_ratings') }} as stg_ratings
    inner join batches on stg_ratings.load_id = batches.load_id
    -- implied by the join; lets the scan of RAW skip the micro-partitions of older loads
    where stg_ratings.loaded_at >= (select min(first_loaded_at) from batches)
    {{ latest_per_key(['user_id', 'movie_id', 'rated_at']) }}

),

{% if is_incremental() %}
-- rows that replace the table's row of their event, or have none there
later as (

    select ratings.*
    from ratings
    left join {{ this }} as current_rows
        on ratings.user_id = current_rows.user_id
        and ratings.movie_id = current_rows.movie_id
        and ratings.rated_at = current_rows.rated_at
    where current_rows.user_id is null or {{ is_later('ratings', 'current_rows') }}

),
{% else %}
later as (

    select * from ratings

),
{% endif %}

final as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        rated_at::date as rated_date,
        loaded_at,
        load_id,
        source_file,
        source_row_number,
        batch

    from later

)

select * from final
