-- One row per movie: its external ids, latest load wins (catalogue).
with

source as (

    select * from {{ source('raw', 'links') }}
    {{ latest_per_key(['movie_id']) }}

),

renamed as (

    select
        movie_id,
        'tt' || lpad(trim(imdb_id), 7, '0') as imdb_id,
        tmdb_id,
        loaded_at,
        load_id

    from source

)

select * from renamed
