-- Grain: one row per (movie, tag rank) for the 10 genome tags most relevant to each movie with a genome
-- (ties broken by tag id): int_movie_top_genome_tags with the tag and movie names.
with

ranked as (

    select * from {{ ref('int_movie_top_genome_tags') }}

),

tags as (

    select * from {{ ref('dim_genome_tags') }}

),

movies as (

    select * from {{ ref('dim_movies') }}

),

final as (

    select
        ranked.movie_id::number(38, 0) as movie_id,
        movies.title::varchar as title,
        ranked.tag_rank::number(38, 0) as tag_rank,
        ranked.tag_id::number(38, 0) as tag_id,
        tags.tag::varchar as tag,
        ranked.relevance::float as relevance

    from ranked
    left join tags on ranked.tag_id = tags.tag_id
    left join movies on ranked.movie_id = movies.movie_id

)

select * from final
