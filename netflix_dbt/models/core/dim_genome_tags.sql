-- Grain: one row per genome tag.
with

genome_tags as (

    select * from {{ ref('stg_genome_tags') }}

),

final as (

    select
        tag_id,
        tag

    from genome_tags

)

select * from final
