-- One row per rating event (user, movie, epoch second). A row loaded again (a re-sent or overlapping daily file)
-- is kept once: the latest load wins, so a corrected rating replaces the earlier one.
with

source as (

    select * from {{ source('raw', 'ratings') }}
    {{ latest_per_key(['user_id', 'movie_id', 'epoch_seconds']) }}

),

renamed as (

    select
        user_id,
        movie_id,
        rating,
        to_timestamp_ntz(epoch_seconds) as rated_at,
        loaded_at,
        load_id

    from source

)

select * from renamed
