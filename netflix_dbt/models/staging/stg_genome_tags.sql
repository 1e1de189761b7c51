-- One row per genome tag, latest load wins (catalogue).
with

source as (

    select * from {{ source('raw', 'genome_tags') }}
    qualify row_number() over (
        partition by tag_id
        order by loaded_at desc, source_file desc, source_row_number desc
    ) = 1

),

renamed as (

    select
        tag_id,
        trim(tag) as tag,
        loaded_at,
        load_id

    from source

)

select * from renamed
