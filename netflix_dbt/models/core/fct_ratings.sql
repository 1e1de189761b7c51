{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'movie_id', 'rated_at'],
        tmp_relation_type='transient',
        on_schema_change='fail'
    )
}}
-- Grain: one row per rating event (user, movie, rated_at). Incremental: a run processes only the rating rows
-- loaded after the latest LOADED_AT already in the table; an event loaded again replaces its earlier row.
with

ratings as (

    select * from {{ ref('stg_ratings') }}
    {% if is_incremental() %}
    where loaded_at > (select coalesce(max(loaded_at), '1970-01-01'::timestamp_ntz) from {{ this }})
    {% endif %}

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
