-- wrk script for the `post` and `nginx-post` scenarios: a mini program's typical
-- wx.request POST, a small JSON body with a Content-Length.
wrk.method = "POST"
wrk.body = '{"openid":"o-bench-user-0001","items":[{"id":42,"qty":1},{"id":7,"qty":3}],"note":"bench"}'
wrk.headers["Content-Type"] = "application/json"
