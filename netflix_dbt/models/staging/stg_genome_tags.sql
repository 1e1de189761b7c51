-- One row per genome tag, latest load wins (catalogue).
with

source as (

    select * from {{ source('raw', 'genome_tags') }}
    {{ latest_per_key(['tag_id']) }}

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
