{#-
  For an incremental run: the highest load batch (int_load_batches.batch) already in the model being built (its
  watermark), as a scalar subquery; rows of the batches above it are new. 0 for an empty table.
    where batch > {{ watermark() }}
  A batch number, not a load time: loads do not commit in the order of their LOADED_AT (a CALL that overlaps
  another can commit rows stamped earlier than rows already transformed), but a load gets its batch number only
  once it has committed, and every later discovery gets a higher one.
-#}
{% macro watermark(column='batch') -%}
(select coalesce(max({{ column }}), 0) from {{ this }})
{%- endmacro %}
