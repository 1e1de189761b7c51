{#-
  SCD type 2 history of the movie catalogue: a daily movies file that corrects a title or the genres closes the
  movie's current row (dbt_valid_to) and opens a new one, so earlier versions are kept.
  Only rows of loads that have committed (int_load_batches) open versions: a movie whose latest row belongs to a
  load still running keeps its current version until the load is batched (hard deletes are not invalidated), so
  the version opens in the run that batches its load and mart_genre_year_popularity finds it by that batch.
-#}
{% snapshot movies_snapshot %}

{{
    config(
        schema='SNAPSHOTS',
        unique_key='movie_id',
        strategy='check',
        check_cols=['title', 'genres'],
        invalidate_hard_deletes=false
    )
}}

select
    movie_id,
    title,
    original_title,
    release_year,
    genres,
    has_genres,
    loaded_at,
    load_id

from {{ ref('stg_movies') }}
where load_id in (select load_id from {{ ref('int_load_batches') }})

{% endsnapshot %}
