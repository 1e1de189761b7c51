{#- Fails for every row where `<column> <expression>` is not true, e.g. expression: "between 0.5 and 5.0". -#}
{% test expression_is_true(model, column_name, expression) %}

select *
from {{ model }}
where not ({{ column_name }} {{ expression }})

{% endtest %}
