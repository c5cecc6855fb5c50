/*
 * list: the one intrusive doubly linked list of the project.
 *
 * A list is a circular ring through a head node; an element embeds a
 * struct list_node and is found back from it with LIST_ELEM. Every
 * operation is O(1) and allocates nothing. A node not on any list is
 * "unlinked" (points at itself), so list_del is safe to call twice and
 * list_linked tells whether a node is on a list.
 */
#ifndef GG_LIST_H
#define GG_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_node {
	struct list_node *prev, *next;
};

#define LIST_ELEM(node, type, member) \
	((type *)(void *)((char *)(node) - offsetof(type, member)))

/* Walks HEAD's elements in order; the current one may be removed. */
#define LIST_FOR_EACH_SAFE(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

/* Walks HEAD's elements last to first; none may be removed meanwhile. */
#define LIST_FOR_EACH_REVERSE(pos, head) \
	for ((pos) = (head)->prev; (pos) != (head); (pos) = (pos)->prev)

static inline void list_init(struct list_node *n)
{
	n->prev = n->next = n;
}

static inline bool list_empty(const struct list_node *head)
{
	return head->next == head;
}

static inline bool list_linked(const struct list_node *n)
{
	return n->next != n;
}

static inline void list_insert_after(struct list_node *at, struct list_node *n)
{
	n->prev = at;
	n->next = at->next;
	at->next->prev = n;
	at->next = n;
}

/* At the front (most recent first) and at the back (oldest first). */
static inline void list_push_front(struct list_node *head, struct list_node *n)
{
	list_insert_after(head, n);
}

static inline void list_push_back(struct list_node *head, struct list_node *n)
{
	list_insert_after(head->prev, n);
}

static inline void list_del(struct list_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

/* Moves all of FROM's elements, in order, to the back of TO; FROM is left
 * empty. Lets a queue be taken whole, so that what is queued while its
 * elements are handled waits for the next turn. */
static inline void list_splice_back(struct list_node *to, struct list_node *from)
{
	if (list_empty(from))
		return;
	from->next->prev = to->prev;
	to->prev->next = from->next;
	from->prev->next = to;
	to->prev = from->prev;
	list_init(from);
}

/* The first and last elements' nodes, or NULL when HEAD is empty. */
static inline struct list_node *list_first(const struct list_node *head)
{
	return list_empty(head) ? NULL : head->next;
}

static inline struct list_node *list_last(const struct list_node *head)
{
	return list_empty(head) ? NULL : head->prev;
}

#endif
