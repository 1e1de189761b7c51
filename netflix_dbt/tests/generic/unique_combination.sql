{#-
  Fails for every combination of `columns` that occurs more than once (a composite key's uniqueness).

  With `newest_by` (a column such as loaded_at), a build that is not a --full-refresh checks only the keys of the
  newest rows (those with the column's maximum value, i.e. the latest load), each against the whole table: a key of
  the latest load that also exists in an older row is still caught. Meant for large incremental models whose
  delete+insert keeps older keys unique; it makes the test's cost that of the latest load, not of the table.
-#}
{% test unique_combination(model, columns, newest_by=none) %}

select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
{% if newest_by and not flags.FULL_REFRESH %}
where ({{ columns | join(', ') }}) in (
    select {{ columns | join(', ') }}
    from {{ model }}
    where {{ newest_by }} = (select max({{ newest_by }}) from {{ model }})
)
{% endif %}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
