-- One row per row of RAW.GENOME_SCORES, renamed. A (movie, tag) pair loaded more than once has a row per load here;
-- fct_genome_scores keeps the latest.
with

source as (

    select * from {{ source('raw', 'genome_scores') }}

),

renamed as (

    select
        movie_id,
        tag_id,
        relevance,
        source_file,
        source_row_number,
        loaded_at,
        load_id

    from source

)

select * from renamed
