-- Grain: one row per calendar day from the first to the last rating day (a generated date spine).
with

bounds as (

    select
        min(rated_at)::date as first_day,
        max(rated_at)::date as last_day

    from {{ ref('fct_ratings') }}

),

offsets as (

    select row_number() over (order by seq4()) - 1 as day_offset
    from table(generator(rowcount => {{ var('date_spine_days') }}))

),

spine as (

    select dateadd(day, offsets.day_offset, bounds.first_day)::date as date_day
    from bounds
    cross join offsets
    where dateadd(day, offsets.day_offset, bounds.first_day) <= bounds.last_day

),

final as (

    select
        date_day,
        year(date_day) as year,
        quarter(date_day) as quarter,
        month(date_day) as month,
        monthname(date_day) as month_name,
        day(date_day) as day_of_month,
        dayofweekiso(date_day) as day_of_week_iso,
        dayname(date_day) as day_name,
        date_trunc('month', date_day)::date as month_start,
        year(date_day) - mod(year(date_day), 10) as decade

    from spine

)

select * from final
