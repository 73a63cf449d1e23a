# Reliability checks that run once per `make test`, outside the two
# integration runs (release and san):
#   make test-valgrind   a short api + worker session under valgrind on the
#                        release binaries (test/valgrind): no memory error,
#                        no definite leak. Valgrind and ASan do not mix, so
#                        this is not part of test/integration.
# The fault tests themselves (test_reliability.py, test_chaos.py,
# test_openapi.py) live in test/integration and run in both builds.

.PHONY: test-valgrind
test-valgrind: venv
	$(MAKE) BUILD=release all
	@command -v valgrind >/dev/null || { echo "test-valgrind: valgrind is missing (make deps)" >&2; exit 1; }
	$(PYTEST) -q test/valgrind

test-extra:: test-valgrind
