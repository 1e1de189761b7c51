-- One row per source file in RAW.LOAD_TRACKING, renamed: which load holds or last loaded it, and its status.
with

source as (

    select * from {{ source('raw', 'load_tracking') }}

),

renamed as (

    select
        file_key,
        dataset,
        status,
        load_id

    from source

)

select * from renamed
