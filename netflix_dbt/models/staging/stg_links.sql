-- One row per movie: its external ids, latest load wins (catalogue).
with

source as (

    select * from {{ source('raw', 'links') }}
    qualify row_number() over (
        partition by movie_id
        order by loaded_at desc, source_file desc, source_row_number desc
    ) = 1

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
