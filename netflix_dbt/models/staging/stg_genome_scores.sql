-- One row per (movie, genome tag): the tag's relevance to the movie, latest load wins (catalogue).
with

source as (

    select * from {{ source('raw', 'genome_scores') }}
    {{ latest_per_key(['movie_id', 'tag_id']) }}

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
