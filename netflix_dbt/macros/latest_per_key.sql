{#-
  RAW is append-only: a key can arrive again in a later file (a corrected movie, a re-sent event).
  Keep one row per key, the one from the latest load (then the latest file, then the last row in it).
-#}
{% macro latest_per_key(key_columns) -%}
qualify row_number() over (
        partition by {{ key_columns | join(', ') }}
        order by loaded_at desc, source_file desc, source_row_number desc
    ) = 1
{%- endmacro %}
