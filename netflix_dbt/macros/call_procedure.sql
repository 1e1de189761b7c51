{#-
  Call a stored procedure and return (and log) its result, e.g. from an on-run-start hook or with
    dbt run-operation call_procedure --args '{name: RAW.LOAD_RAW_FILES, args: []}'
  `args` are SQL literals or expressions, passed through as written.
-#}
{% macro call_procedure(name, args=[]) %}
  {% set sql %}CALL {{ name }}({{ args | join(', ') }}){% endset %}
  {% set result = run_query(sql) %}
  {% if execute %}
    {% set value = result.columns[0].values()[0] %}
    {{ log(name ~ " returned: " ~ value, info=True) }}
    {{ return(value) }}
  {% endif %}
{% endmacro %}
