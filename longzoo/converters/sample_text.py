"""Real prose for the parity check, written for longzoo (English and Chinese).

Parity needs text a tokenizer really splits (not random ids) so that special tokens,
padding and token types are exercised the way users exercise them.
"""

ENGLISH = (
    "The river town woke slowly that spring. Fishermen untied their boats before the fog "
    "lifted, and the baker on the corner opened his shutters while the street lamps were "
    "still burning. Nobody in the town remembered when the old bridge had been built, but "
    "everyone had an opinion about whether it should be repaired or replaced. The council "
    "met every Thursday evening in a hall that smelled of varnish and wet coats. Engineers "
    "from the capital had measured the stones twice and written a long report, full of "
    "tables and careful warnings, which few people read to the end. The schoolteacher read "
    "it aloud to her class, one chapter a week, because she believed that children should "
    "understand the decisions that would shape the place they lived in. By the time summer "
    "arrived, the children knew more about load limits, river currents and the chemistry of "
    "mortar than most of the adults who argued at the meetings. One boy built a model of the "
    "bridge from matchsticks and glue, loaded it with coins until it collapsed, and brought "
    "the pieces to the council to show where it had failed. The mayor laughed at first, then "
    "asked him to explain it again, slowly, while the clerk wrote everything down. In the "
    "end the town kept its bridge, strengthened with new steel beneath the old stones, and "
    "the matchstick model stood for years in a glass case beside the door of the hall."
)

CHINESE = (
    "清晨的小城慢慢醒来。渔民们在雾气散去之前解开了船绳，街角的面包师推开窗板的时候，路灯还亮着。"
    "城里没有人记得那座老桥是什么时候修建的，但是每个人都对它应该修缮还是重建有自己的看法。"
    "镇议会每个星期四晚上在一间满是油漆味和湿外套气味的大厅里开会。首都来的工程师把桥上的石头量了两遍，"
    "写了一份很长的报告，里面全是表格和谨慎的提醒，可是很少有人把它读完。学校的老师每周给学生念一章，"
    "因为她相信孩子们应该明白那些将会改变自己家乡的决定。到了夏天，孩子们对承重极限、河水流速和砂浆的化学成分"
    "了解得比会上争论的大多数大人还要多。有个男孩用火柴棍和胶水做了一座桥的模型，往上面放硬币，直到它塌下来，"
    "然后把碎片带到议会，指给大家看它是从哪里断开的。镇长起初笑了，后来请他慢慢地再讲一遍，书记员把每句话都记了下来。"
    "最后，小城保住了那座桥，在旧石头下面加了新的钢梁，而那个火柴模型在大厅门口的玻璃柜里放了很多年。"
)

TEXTS = (ENGLISH, CHINESE)
