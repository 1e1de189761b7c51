-- Grain: one row per (movie, genome tag): how relevant the tag is to the movie.
with

scores as (

    select * from {{ ref('stg_genome_scores') }}

),

final as (

    select
        movie_id,
        tag_id,
        relevance

    from scores

)

select * from final
