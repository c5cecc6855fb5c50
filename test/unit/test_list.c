#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "list.h"

struct item {
	int v;
	struct list_node link;
};

/* HEAD's values in order, first to last, into OUT; how many. */
static size_t values(struct list_node *head, int *out, size_t max)
{
	struct list_node *n, *tmp;
	size_t i = 0;
	LIST_FOR_EACH_SAFE(n, tmp, head)
		if (i < max)
			out[i++] = LIST_ELEM(n, struct item, link)->v;
	return i;
}

static void init_items(struct item *it, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		it[i].v = (int)i;
		list_init(&it[i].link);
	}
}

static void test_empty(void **state)
{
	(void)state;
	struct list_node head;
	list_init(&head);
	assert_true(list_empty(&head));
	assert_null(list_first(&head));
	assert_null(list_last(&head));
	int out[1];
	assert_int_equal(values(&head, out, 1), 0);
	struct list_node *n;
	size_t seen = 0;
	LIST_FOR_EACH_REVERSE(n, &head)
		seen++;
	assert_int_equal(seen, 0);
}

static void test_push_front_back(void **state)
{
	(void)state;
	struct list_node head;
	struct item it[4];
	list_init(&head);
	init_items(it, 4);
	list_push_back(&head, &it[1].link);
	list_push_front(&head, &it[0].link);
	list_push_back(&head, &it[2].link);
	list_push_front(&head, &it[3].link);
	int out[8];
	assert_int_equal(values(&head, out, 8), 4);
	assert_int_equal(out[0], 3);
	assert_int_equal(out[1], 0);
	assert_int_equal(out[2], 1);
	assert_int_equal(out[3], 2);
	assert_false(list_empty(&head));
	assert_ptr_equal(list_first(&head), &it[3].link);
	assert_ptr_equal(list_last(&head), &it[2].link);
	/* the same elements, last to first */
	struct list_node *n;
	int want[] = { 2, 1, 0, 3 };
	size_t i = 0;
	LIST_FOR_EACH_REVERSE(n, &head)
		assert_int_equal(LIST_ELEM(n, struct item, link)->v, want[i++]);
	assert_int_equal(i, 4);
}

static void test_linked_and_del_twice(void **state)
{
	(void)state;
	struct list_node head;
	struct item it[3];
	list_init(&head);
	init_items(it, 3);
	assert_false(list_linked(&it[0].link));
	for (size_t i = 0; i < 3; i++)
		list_push_back(&head, &it[i].link);
	assert_true(list_linked(&it[1].link));
	list_del(&it[1].link);
	assert_false(list_linked(&it[1].link));
	/* a second del of an unlinked node changes nothing */
	list_del(&it[1].link);
	assert_false(list_linked(&it[1].link));
	int out[4];
	assert_int_equal(values(&head, out, 4), 2);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[1], 2);
	/* the ends: first and last follow */
	list_del(&it[0].link);
	assert_ptr_equal(list_first(&head), &it[2].link);
	assert_ptr_equal(list_last(&head), &it[2].link);
	list_del(&it[2].link);
	list_del(&it[2].link);
	assert_true(list_empty(&head));
	assert_null(list_first(&head));
	assert_null(list_last(&head));
	/* an unlinked node goes on again */
	list_push_front(&head, &it[1].link);
	assert_ptr_equal(list_first(&head), &it[1].link);
	assert_ptr_equal(list_last(&head), &it[1].link);
}

/* Removal of the current element, and of every element, during a walk. */
static void test_for_each_safe_removal(void **state)
{
	(void)state;
	struct list_node head;
	struct item it[6];
	list_init(&head);
	init_items(it, 6);
	for (size_t i = 0; i < 6; i++)
		list_push_back(&head, &it[i].link);
	struct list_node *n, *tmp;
	int visited = 0;
	LIST_FOR_EACH_SAFE(n, tmp, &head) {
		struct item *e = LIST_ELEM(n, struct item, link);
		visited++;
		if (e->v % 2)
			list_del(n);
	}
	assert_int_equal(visited, 6);
	int out[8];
	assert_int_equal(values(&head, out, 8), 3);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[1], 2);
	assert_int_equal(out[2], 4);
	visited = 0;
	LIST_FOR_EACH_SAFE(n, tmp, &head) {
		list_del(n);
		visited++;
	}
	assert_int_equal(visited, 3);
	assert_true(list_empty(&head));
	for (size_t i = 0; i < 6; i++)
		assert_false(list_linked(&it[i].link));
}

static void test_splice_back(void **state)
{
	(void)state;
	struct list_node a, b;
	struct item it[5];
	list_init(&a);
	list_init(&b);
	init_items(it, 5);
	/* an empty FROM changes nothing */
	list_splice_back(&a, &b);
	assert_true(list_empty(&a));
	assert_true(list_empty(&b));
	/* into an empty TO */
	list_push_back(&b, &it[0].link);
	list_push_back(&b, &it[1].link);
	list_splice_back(&a, &b);
	assert_true(list_empty(&b));
	/* behind what TO holds */
	list_push_back(&b, &it[3].link);
	list_push_back(&b, &it[4].link);
	list_push_back(&a, &it[2].link);
	list_splice_back(&a, &b);
	assert_true(list_empty(&b));
	int out[8];
	assert_int_equal(values(&a, out, 8), 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(out[i], i);
	assert_ptr_equal(list_first(&a), &it[0].link);
	assert_ptr_equal(list_last(&a), &it[4].link);
	/* and the ring is whole backwards too */
	struct list_node *n;
	int i = 4;
	LIST_FOR_EACH_REVERSE(n, &a)
		assert_int_equal(LIST_ELEM(n, struct item, link)->v, i--);
	assert_int_equal(i, -1);
	/* FROM is usable again */
	list_push_front(&b, &it[0].link);
	assert_ptr_equal(list_first(&b), &it[0].link);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_push_front_back),
		cmocka_unit_test(test_linked_and_del_twice),
		cmocka_unit_test(test_for_each_safe_removal),
		cmocka_unit_test(test_splice_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
