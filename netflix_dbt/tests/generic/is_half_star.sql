{#- Fails for every rating that is not one of 0.5, 1.0, ... 5.0 (half-star steps). -#}
{% test is_half_star(model, column_name) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and (
      {{ column_name }} < 0.5
      or {{ column_name }} > 5.0
      or mod({{ column_name }} * 2, 1) <> 0
  )

{% endtest %}
