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
-- Incremental: a run reads only the rating rows loaded after the latest loaded_at already in the table, and
-- delete+insert replaces the earlier row of an event loaded again.
with

ratings as (

    select * from {{ ref('stg_ratings') }}
    {% if is_incremental() %}
    where loaded_at > {{ watermark() }}
    {% endif %}
    {{ latest_per_key(['user_id', 'movie_id', 'rated_at']) }}

),

final as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        rated_at::date as rated_date,
        loaded_at,
        load_id

    from ratings

)

select * from final
