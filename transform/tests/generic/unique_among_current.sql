{#- An SCD2 table keeps many versions of a key, but at most one current one. -#}
{% test unique_among_current(model, key) %}

select {{ key }}
from {{ model }}
where is_current
group by {{ key }}
having count(*) > 1

{% endtest %}
