-- One row per GitHub issue or pull request with how long it took to answer and to close.
{{
    config(
        partition_by=day_partitioned('created_at'),
        cluster_by=clustered_by(bigquery=['repository'], snowflake=['to_date(created_at)']),
    )
}}

with

issues as (

    select * from {{ ref('stg_github__issues') }}

),

pull_requests as (

    select * from {{ ref('stg_github__pull_requests') }}

),

comments as (

    select * from {{ ref('stg_github__issue_comments') }}

),

-- GitHub's issues endpoint lists pull requests too; those come from pull_requests
work_items as (

    select
        'issue' as item_type,
        repository,
        issue_number as item_number,
        title,
        author_login,
        issue_state as item_state,
        created_at,
        closed_at,
        cast(null as {{ dbt.type_timestamp() }}) as merged_at

    from issues
    where not is_pull_request

    union all

    select
        'pull_request' as item_type,
        repository,
        pull_request_number as item_number,
        title,
        author_login,
        case when is_merged then 'merged' else pull_request_state end as item_state,
        created_at,
        closed_at,
        merged_at

    from pull_requests

),

-- the first comment by someone other than the author is the first response
first_responses as (

    select
        work_items.repository,
        work_items.item_number,
        min(comments.created_at) as first_response_at

    from work_items
    inner join comments
        on
            work_items.repository = comments.repository
            and work_items.item_number = comments.issue_number
            and work_items.author_login != comments.author_login
    group by work_items.repository, work_items.item_number

),

timed as (

    select
        work_items.*,
        first_responses.first_response_at,
        coalesce(work_items.merged_at, work_items.closed_at) as finished_at

    from work_items
    left join first_responses
        on
            work_items.repository = first_responses.repository
            and work_items.item_number = first_responses.item_number

),

final as (

    select
        repository || '#' || cast(item_number as {{ dbt.type_string() }}) as work_item_key,
        item_type,
        repository,
        item_number,
        title,
        author_login,
        item_state,
        created_at,
        first_response_at,
        closed_at,
        merged_at,
        closed_at is null as is_open,
        {{ hours_between('created_at', 'first_response_at') }} as hours_to_first_response,
        {{ hours_between('created_at', 'finished_at') }} as lead_time_hours

    from timed

)

select * from final
