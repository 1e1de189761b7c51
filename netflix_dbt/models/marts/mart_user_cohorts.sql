-- Grain: one row per cohort: the users whose first rating falls in the same calendar month.
with

users as (

    select * from {{ ref('dim_users') }}

),

final as (

    select
        date_trunc('month', first_rated_at)::date as cohort_month,
        year(first_rated_at)::number(38, 0) as cohort_year,
        count(*)::number(38, 0) as cohort_size,
        sum(rating_count)::number(38, 0) as rating_count,
        (sum(rating_count) / count(*))::float as ratings_per_user,
        avg(datediff(day, first_rated_at, last_rated_at))::float as mean_active_days,
        count_if(datediff(day, first_rated_at, last_rated_at) >= 30)::number(38, 0) as users_active_30_days

    from users
    group by 1, 2

)

select * from final
