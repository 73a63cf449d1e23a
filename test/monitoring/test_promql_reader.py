"""The selector reader the other tests rely on finds what it must."""
from promql import metric_name, selectors, substitute


def test_selectors_of_a_dashboard_query():
    e = substitute('histogram_quantile(0.95, sum by (type, le) (rate(surge_job_wait_seconds_bucket{namespace=~"$namespace"}[$__rate_interval])))')
    assert selectors(e) == ['surge_job_wait_seconds_bucket{namespace=~"surge"}']


def test_selectors_with_binary_operators_and_keywords():
    e = ('surge:queue_depth:max > 0 and on (namespace) sum by (namespace) '
         '(increase(surge_jobs_finished_total{outcome="dead", route="/jobs}"}[15m])) == 0 or vector(1)')
    assert selectors(e) == ["surge:queue_depth:max",
                            'surge_jobs_finished_total{outcome="dead", route="/jobs}"}']
    assert [metric_name(s) for s in selectors(e)] == ["surge:queue_depth:max", "surge_jobs_finished_total"]


def test_numbers_and_functions_are_not_selectors():
    assert selectors("0.8 * sum(kube_x{a=\"b\"}) / 1e3 + absent(up{job=\"w\"} == 1)") == \
        ['kube_x{a="b"}', 'up{job="w"}']
