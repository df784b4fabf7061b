/* The leader's contact check: a majority's recent answers keep it leading;
 * a cut-off leader notices within the window, not a whole election
 * timeout later. */
#include "chanq_config.h"

#include <check.h>

#include "daemon/cluster/contact.h"
#include "tests/cluster/suites.h"

enum { SELF = 1, WINDOW = 350 };
static const uint64_t three[] = {1, 2, 3};

START_TEST(a_new_leader_has_a_window_of_grace)
{
    struct contact *c = contact_new(16);
    ck_assert_ptr_nonnull(c);
    contact_lead(c, 10000);
    ck_assert(contact_quorum(c, three, 3, SELF, 10000 + WINDOW, WINDOW));
    ck_assert(!contact_quorum(c, three, 3, SELF, 10000 + WINDOW + 1, WINDOW));
    contact_free(c);
}
END_TEST

START_TEST(one_follower_of_two_is_a_majority)
{
    struct contact *c = contact_new(16);
    contact_lead(c, 0);
    for (uint64_t t = 100; t <= 2000; t += 100)
        contact_heard(c, 3, t); /* node 2 is gone, node 3 answers */
    ck_assert(contact_quorum(c, three, 3, SELF, 2000 + WINDOW, WINDOW));
    ck_assert(!contact_quorum(c, three, 3, SELF, 2000 + WINDOW + 1, WINDOW));
    /* Four voters: self and one more are not a majority. */
    const uint64_t four[] = {1, 2, 3, 4};
    ck_assert(!contact_quorum(c, four, 4, SELF, 2000, WINDOW));
    contact_heard(c, 4, 2000);
    ck_assert(contact_quorum(c, four, 4, SELF, 2000, WINDOW));
    contact_free(c);
}
END_TEST

START_TEST(answers_from_an_earlier_leadership_do_not_count_before_it)
{
    struct contact *c = contact_new(16);
    contact_heard(c, 2, 5000);
    contact_heard(c, 3, 5000);
    contact_lead(c, 1000); /* an earlier time: answers heard later still count */
    ck_assert(contact_quorum(c, three, 3, SELF, 5000 + WINDOW, WINDOW));
    contact_lead(c, 9000); /* leading again, later: a fresh grace */
    ck_assert(contact_quorum(c, three, 3, SELF, 9000 + WINDOW, WINDOW));
    ck_assert(!contact_quorum(c, three, 3, SELF, 9000 + WINDOW + 1, WINDOW));
    contact_free(c);
}
END_TEST

START_TEST(a_lone_voter_and_non_voters_never_lose_contact)
{
    struct contact *c = contact_new(2);
    contact_lead(c, 0);
    const uint64_t one[] = {SELF};
    ck_assert(contact_quorum(c, one, 1, SELF, 1000000, WINDOW));
    ck_assert(contact_quorum(c, NULL, 0, SELF, 1000000, WINDOW));
    /* Members beyond the tracker's size are never counted as heard. */
    contact_heard(c, 7, 10);
    contact_heard(c, 8, 10);
    contact_heard(c, 9, 10);
    const uint64_t other[] = {SELF, 9, 10};
    ck_assert(!contact_quorum(c, other, 3, SELF, 1000, WINDOW));
    contact_free(c);
}
END_TEST

Suite *
contact_suite(void)
{
    Suite *s = suite_create("contact");
    TCase *tc = tcase_create("quorum");
    tcase_add_test(tc, a_new_leader_has_a_window_of_grace);
    tcase_add_test(tc, one_follower_of_two_is_a_majority);
    tcase_add_test(tc, answers_from_an_earlier_leadership_do_not_count_before_it);
    tcase_add_test(tc, a_lone_voter_and_non_voters_never_lose_contact);
    suite_add_tcase(s, tc);
    return s;
}
