-- One row per tag event (user, movie, trimmed tag, epoch second); duplicates (also those differing only in
-- surrounding whitespace) are kept once, the latest load winning.
with

source as (

    select * from {{ source('raw', 'tags') }}

),

renamed as (

    select
        user_id,
        movie_id,
        trim(tag) as tag,
        to_timestamp_ntz(epoch_seconds) as tagged_at,
        loaded_at,
        load_id,
        source_file,
        source_row_number

    from source
    where trim(tag) <> ''

),

deduplicated as (

    select
        user_id,
        movie_id,
        tag,
        tagged_at,
        loaded_at,
        load_id

    from renamed
    {{ latest_per_key(['user_id', 'movie_id', 'tag', 'tagged_at']) }}

)

select * from deduplicated
