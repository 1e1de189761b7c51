{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='load_id',
        tmp_relation_type='transient',
        on_schema_change='fail',
        full_refresh=false
    )
}}
-- Grain: one row per load (a CALL of RAW.LOAD_RAW_FILES) that wrote ratings, genome scores or movies to RAW, once
-- that load has committed everything: no file of it is LOADING in LOAD_TRACKING any more (a file is LOADING until
-- its COPY has committed and its out-of-contract rows have left RAW). A load whose file was taken over after a
-- crash keeps RAW rows under its own LOAD_ID with no tracking row left: complete, once the CALL that took the file
-- over has finished with it.
-- Each run gives the loads it finds for the first time one batch number, one above the highest so far. Incremental
-- models take the rows of the batches above the highest they hold: a load that commits late (its rows stamped
-- earlier than rows already transformed) still gets a higher batch, so no load is skipped.
-- full_refresh=false: --full-refresh does not rebuild the numbering (it would start from 1 again, below the batches
-- the facts hold, and they would skip the next loads); it rebuilds the facts from every batched load. To renumber,
-- drop this table and run with --full-refresh.
with

raw_loads as (

    select * from {{ ref('stg_raw_loads') }}

),

tracking as (

    select * from {{ ref('stg_load_tracking') }}

),

-- loads with a file still being loaded: by the tracking row's load, or (a file taken over after a crash) by the
-- staged object the rows came from, whose path contains the tracked file's key
unfinished as (

    select load_id
    from tracking
    where status = 'LOADING'

    union

    select raw_loads.load_id
    from raw_loads
    inner join tracking
        on tracking.status = 'LOADING' and contains(raw_loads.source_file, tracking.file_key)

),

new_loads as (

    select
        load_id,
        sum(row_count) as row_count,
        min(first_loaded_at) as first_loaded_at,
        max(last_loaded_at) as last_loaded_at

    from raw_loads
    where load_id not in (select load_id from unfinished where load_id is not null)
    {% if is_incremental() %}
        and load_id not in (select load_id from {{ this }})
    {% endif %}
    group by load_id

),

final as (

    select
        load_id,
        {% if is_incremental() %}({{ watermark() }} + 1){% else %}1{% endif %}::number(38, 0) as batch,
        row_count::number(38, 0) as row_count,
        first_loaded_at::timestamp_ntz as first_loaded_at,
        last_loaded_at::timestamp_ntz as last_loaded_at,
        sysdate() as discovered_at

    from new_loads

)

select * from final
