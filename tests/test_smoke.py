def test_health_and_ready_answer_ok(api):
    assert api.http.get("/healthz").json() == {"status": "ok"}
    ready = api.http.get("/readyz")
    assert ready.status_code == 200


def test_unknown_route_is_enveloped_404(api):
    response = api.http.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"success": False, "code": "404", "message": "Not Found",
                               "tags": ["error_not_found"]}
