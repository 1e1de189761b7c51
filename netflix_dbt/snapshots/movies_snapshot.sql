{#-
  SCD type 2 history of the movie catalogue: a daily movies file that corrects a title or the genres closes the
  movie's current row (dbt_valid_to) and opens a new one, so earlier versions are kept.
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
    loaded_at

from {{ ref('stg_movies') }}

{% endsnapshot %}
