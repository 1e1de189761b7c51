-- One row per row of RAW.RATINGS, renamed and typed. An event loaded more than once (a re-sent or overlapping daily
-- file) has a row per load here; fct_ratings keeps the latest. A plain projection of RAW, so a filter on loaded_at
-- (fct_ratings' incremental runs) reaches the RAW table's scan.
with

source as (

    select * from {{ source('raw', 'ratings') }}

),

renamed as (

    select
        user_id,
        movie_id,
        rating,
        to_timestamp_ntz(epoch_seconds) as rated_at,
        source_file,
        source_row_number,
        loaded_at,
        load_id

    from source

)

select * from renamed
