-- One row per (dataset, load, staged file) in the RAW tables that incremental models read (ratings, genome scores,
-- and movies for movies_snapshot's versions): how many rows the load wrote from the file, and when they were
-- stamped. int_load_batches finds the loads it has not numbered yet here.
with

ratings as (

    select 'ratings' as dataset, load_id, source_file, loaded_at
    from {{ source('raw', 'ratings') }}

),

genome_scores as (

    select 'genome-scores' as dataset, load_id, source_file, loaded_at
    from {{ source('raw', 'genome_scores') }}

),

movies as (

    select 'movies' as dataset, load_id, source_file, loaded_at
    from {{ source('raw', 'movies') }}

),

unioned as (

    select * from ratings
    union all
    select * from genome_scores
    union all
    select * from movies

),

renamed as (

    select
        dataset,
        load_id,
        source_file,
        count(*) as row_count,
        min(loaded_at) as first_loaded_at,
        max(loaded_at) as last_loaded_at

    from unioned
    group by dataset, load_id, source_file

)

select * from renamed
