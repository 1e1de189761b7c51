{#-
  For an incremental run: the newest `column` value already in the model being built (its watermark), as a scalar
  subquery; rows loaded after it are new. 1970-01-01 for an empty table.
    where loaded_at > {{ watermark() }}
-#}
{% macro watermark(column='loaded_at') -%}
(select coalesce(max({{ column }}), '1970-01-01'::timestamp_ntz) from {{ this }})
{%- endmacro %}
