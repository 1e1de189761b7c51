-- Grain: one row per (movie, tag rank) for the 10 genome tags most relevant to each movie with a genome
-- (ties broken by tag id).
with

scores as (

    select * from {{ ref('fct_genome_scores') }}

),

tags as (

    select * from {{ ref('dim_genome_tags') }}

),

movies as (

    select * from {{ ref('dim_movies') }}

),

ranked as (

    select
        movie_id,
        tag_id,
        relevance,
        row_number() over (partition by movie_id order by relevance desc, tag_id) as tag_rank

    from scores
    qualify tag_rank <= 10

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
