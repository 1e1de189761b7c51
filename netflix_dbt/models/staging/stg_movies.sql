-- One row per movie: the latest version of each movie across every loaded movies file (catalogue).
with

source as (

    select * from {{ source('raw', 'movies') }}
    {{ latest_per_key(['movie_id']) }}

),

renamed as (

    select
        movie_id,
        trim(title) as original_title,
        -- "Toy Story (1995)" -> "Toy Story"; titles without a trailing "(YYYY)" are kept whole
        trim(regexp_replace(trim(title), '[(][0-9]{4}[)]$', '')) as title,
        try_to_number(regexp_substr(trim(title), '[(]([0-9]{4})[)]$', 1, 1, 'e', 1)) as release_year,
        genres <> '(no genres listed)' as has_genres,
        case when genres <> '(no genres listed)' then genres end as genres,
        case when genres <> '(no genres listed)' then split(genres, '|') else array_construct() end as genre_list,
        loaded_at,
        load_id,
        source_file

    from source

)

select * from renamed
