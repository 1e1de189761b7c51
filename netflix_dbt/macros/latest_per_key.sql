{#-
  RAW is append-only: a key can arrive again in a later file (a corrected movie, a re-sent event).
  Keep one row per key, the one from the latest load (then the latest file, then the last row in it).
-#}
{% macro latest_per_key(key_columns) -%}
qualify row_number() over (
        partition by {{ key_columns | join(', ') }}
        order by {% for column in latest_order() %}{{ column }} desc{{ ', ' if not loop.last }}{% endfor %}
    ) = 1
{%- endmacro %}

{#- The columns that order the rows of one key, latest last: latest_per_key keeps the last. -#}
{% macro latest_order() -%}
{{ return(['loaded_at', 'source_file', 'source_row_number']) }}
{%- endmacro %}

{#-
  True when the row `new` comes after the row `current` in latest_per_key's order, e.g. when an incremental run
  decides whether a new row replaces the row of its key already in the table:
    where {{ is_later('ratings', 'current_rows') }}
  A load can commit after a later-stamped one was transformed; its rows replace only the rows they come after, so
  an incremental run keeps the same row as a full refresh.
-#}
{% macro is_later(new, current) -%}
{%- set columns = latest_order() -%}
(
    {%- for column in columns %}
    {{ 'or ' if not loop.first }}(
        {%- for earlier in columns[:loop.index0] %}{{ new }}.{{ earlier }} = {{ current }}.{{ earlier }} and {% endfor -%}
        {{ new }}.{{ column }} > {{ current }}.{{ column }})
    {%- endfor %}
)
{%- endmacro %}
