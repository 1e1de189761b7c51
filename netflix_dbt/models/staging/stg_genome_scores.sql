-- One row per (movie, genome tag): the tag's relevance to the movie, latest load wins (catalogue).
with

source as (

    select * from {{ source('raw', 'genome_scores') }}
    qualify row_number() over (
        partition by movie_id, tag_id
        order by loaded_at desc, source_file desc, source_row_number desc
    ) = 1

),

renamed as (

    select
        movie_id,
        tag_id,
        relevance,
        loaded_at,
        load_id

    from source

)

select * from renamed
