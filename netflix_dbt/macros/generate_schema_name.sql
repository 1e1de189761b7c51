{#-
  Use a model's custom schema name as-is (STAGING, CORE, MARTS, SNAPSHOTS: the schemas the migrations create),
  instead of dbt's default "<target schema>_<custom schema>". Models without one go to the target's schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim | upper }}
    {%- endif -%}
{%- endmacro %}
